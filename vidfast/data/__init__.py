"""vidfast.data"""
