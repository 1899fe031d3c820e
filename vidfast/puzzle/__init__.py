"""vidfast.puzzle"""
