"""One network per style (Johnson et al. 2016, a light depthwise-separable variant and a narrow full-conv one): the
networks, the perceptual loss and LightningModule, the train_fast task."""
