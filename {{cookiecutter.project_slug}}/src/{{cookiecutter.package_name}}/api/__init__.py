"""Demo routes: each shows one feature in use."""
