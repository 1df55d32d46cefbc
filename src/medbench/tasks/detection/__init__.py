"""The detection family: boxes per image, torchvision detectors, COCO mAP and FROC."""
