"""modelward.services"""
