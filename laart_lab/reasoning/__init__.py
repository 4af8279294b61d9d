"""Relational-reasoning components (plain ``nn.Module``s, free of Lightning).

* :mod:`laart_lab.reasoning.boxes`: Gumbel-box geometry (intersection, volume, conditional probability);
* :mod:`laart_lab.reasoning.slrm`: the SLRM reasoner, relations as boxes composed by a learned reduction;
* :mod:`laart_lab.reasoning.baselines`: the baselines the SLRM must beat (path GRU, story-graph network).
"""
