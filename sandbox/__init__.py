"""Where agent commands run: isolated workspaces of the user's repo and the sandboxes around them."""
