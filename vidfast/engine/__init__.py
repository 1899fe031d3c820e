"""vidfast.engine"""
