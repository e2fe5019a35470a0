"""Training paradigms: what the method sees and which cross-view terms are added."""
