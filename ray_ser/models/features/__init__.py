"""Acoustic features shared by branch families: functionals, augmentation, speaker normalisation."""
