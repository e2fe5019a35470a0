import os

import torch

# the fixtures every plugin's tests get too: tiny_root, tiny_copy, an isolated cache home
pytest_plugins = ["msde_bench.testing"]

torch.set_num_threads(min(2, os.cpu_count() or 1))
