"""modelward.provenance"""
