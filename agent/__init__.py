"""One autonomous coding agent: model client, tool calls, tools, the loop and its trajectory."""
