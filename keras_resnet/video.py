"""The old name of :mod:`keras_resnet.weights.video` (the video ResNets' weight conversion),
kept so that ``from keras_resnet import video`` and ``keras_resnet.video.load_torchvision_video``
go on working. The 3D models themselves are registry rows built by :func:`keras_resnet.ResNet`."""

from keras_resnet.weights.video import (  # noqa: F401
    Plan,
    apply,
    load_torchvision_video,
    plan,
    port_torchvision_video,
    torchvision_name,
)
