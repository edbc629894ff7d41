"""The web layer: everything that needs Datasette (views by resource, the route table, hooks, settings)."""
