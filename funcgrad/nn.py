"""Neural-network helpers: activations, losses, MLP initialisation and application."""
