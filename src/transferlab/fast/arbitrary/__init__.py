"""Any style at run time (AdaIN, Huang & Belongie 2017; SANet, Park & Lee 2019; AdaAttN, Liu et al. 2021): the
pure ops, the attention modules, the networks, the LightningModule, the doors and the train_adain and
apply_adain tasks."""
