"""vidfast.models"""
