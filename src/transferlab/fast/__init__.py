"""Real-time style transfer: feed-forward stylizers. The shared machinery is here (photo data, the training
loop, apply, export, the one stylizer loader); the two families are sub-packages: ``per_style`` (one network
per style: Johnson et al., a light variant) and ``arbitrary`` (any style at run time: AdaIN, SANet, AdaAttN)."""
