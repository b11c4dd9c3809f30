"""The Ray-free annotation core: one place that turns decoded clips into branch votes and a label.

The labeling job's stages (ray_ser/stages/) and the Serve deployments (ray_ser/serve/) are thin
wrappers over it, so routing, abstention, speaker lookup and error capture are written once.
"""
