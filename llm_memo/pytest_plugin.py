"""pytest plugin (registered by entry point); inert unless enabled. Filled in below."""
