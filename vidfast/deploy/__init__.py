"""vidfast.deploy"""
