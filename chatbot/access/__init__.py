"""Who may act and how much: admin sign-in, roles, throttles and spending limits."""
