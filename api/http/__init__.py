"""The HTTP API: `app.create_app` builds it; one router module per noun, and the shared
dependencies, pagination, command sending and read-model access beside them."""
