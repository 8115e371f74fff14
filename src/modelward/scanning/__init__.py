"""modelward.scanning"""
