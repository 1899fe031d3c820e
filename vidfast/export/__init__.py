"""vidfast.export"""
