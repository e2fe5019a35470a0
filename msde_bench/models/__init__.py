"""Models: the Method contract, backbones, the plain backbone + linear head."""
