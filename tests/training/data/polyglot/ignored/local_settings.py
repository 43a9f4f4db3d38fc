def secret_value():
    value = 42
    return value
