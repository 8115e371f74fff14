"""modelward.storage"""
