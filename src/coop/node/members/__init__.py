"""Members, admins and integrations: accounts, credentials, and how a member is credited."""
