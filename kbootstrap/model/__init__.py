"""The model layer: what an inventory may say, checked before any host is touched. (spec.py, the inventory model,
moves here with the layout of the workflows issue; component_config's upstream types are here already.)"""
