"""msde-bench: facial expression recognition under real face-mask occlusion (MSD-E protocol)."""

__version__ = "0.7.0"

CLASS_NAMES = ("Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral")
NUM_CLASSES = len(CLASS_NAMES)
