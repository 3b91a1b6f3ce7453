"""The networks and how they run: timm backbones, safe checkpoints, the one
device/acceleration set-up, Grad-CAM.
"""
