"""Any style at run time (AdaIN, Huang & Belongie 2017; SANet, Park & Lee 2019): the pure ops, the networks,
the LightningModule, the doors and the train_adain and apply_adain tasks."""
