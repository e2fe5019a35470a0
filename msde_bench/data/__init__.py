"""Datasets: the one in-memory paired form, the MSD-E reader, the embedded synthetic set."""
