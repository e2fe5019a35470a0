"""msde-bench: facial expression recognition under real face-mask occlusion (MSD-E protocol)."""

__version__ = "0.12.0"

CLASS_NAMES = ("Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral")
NUM_CLASSES = len(CLASS_NAMES)

# Under pytest, the plugin test kit's asserts are rewritten (their failures show the values) also
# when a plugin's conftest imports msde_bench.testing before naming it in pytest_plugins; without
# this pytest warns "Module already imported so cannot be rewritten" (pytest's documented pattern:
# register_assert_rewrite in the package, before the helper module is imported).
import sys as _sys  # noqa: E402

if "pytest" in _sys.modules:
    _sys.modules["pytest"].register_assert_rewrite("msde_bench.testing")
del _sys
