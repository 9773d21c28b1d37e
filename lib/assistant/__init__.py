"""The tool-using assistant: LangChain agent over the gateway, a typed tool registry, policies and guards."""
