"""Choice lists of options whose modules are slow to import (torch, grad-cam), defined once here so
that the command line can offer them without importing those modules: explain and data.convert
take theirs from here."""

#: pytorch-grad-cam's methods that `msde-bench explain --cam` offers (explain.cam_class maps them)
CAM_METHODS = ("gradcam", "gradcam++", "xgradcam", "layercam", "hirescam", "eigencam", "scorecam")
#: the public datasets `msde-bench data convert --format` reads (data.convert)
CONVERT_FORMATS = ("rafdb", "fer2013", "affectnet", "imagefolder", "ckplus")
#: minutes between two checkpoints of a cell's training within an epoch (cellstate; every epoch's end
#: saves one as well): `--checkpoint-minutes`'s default
CHECKPOINT_MINUTES = 10.0
