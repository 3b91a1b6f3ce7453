"""Array operations shared by stages: gray levels, crop windows and resizing, augmentation,
the preprocessing cache.
"""
