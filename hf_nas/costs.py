def count_macs(*a): pass
def count_parameters(*a): pass
def measure_latency(*a): pass
