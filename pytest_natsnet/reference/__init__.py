"""The built-in reference rendering of the official NATS chart 2.14.2 (values schema, templates, objects)."""
