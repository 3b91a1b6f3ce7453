"""Array operations shared by stages: gray levels, 2-D crop windows and resizing,
augmentation, the preprocessing cache; for volumes: resampling, intensity recipes (CT
windows, MR percentiles), lesion masks and boxes, 2d/2.5d/3d crops, lesion candidates from
probability maps, patch sampling and sliding-window inference.
"""
