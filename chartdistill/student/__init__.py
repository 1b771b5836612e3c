"""The student VLM: building it, training it with LoRA, generating essays with it."""
