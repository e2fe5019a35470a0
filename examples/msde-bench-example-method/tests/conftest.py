# msde-bench's test fixtures (tiny_root, tiny_copy, an isolated cache home): pytest alone is enough
pytest_plugins = ["msde_bench.testing"]
