"""One network per style (Johnson et al. 2016 and a light, depthwise-separable variant): the networks, the
perceptual loss and LightningModule, the train_fast task."""
