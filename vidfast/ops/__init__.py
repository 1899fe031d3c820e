"""vidfast.ops"""
