"""A Supabase project outside its database: the Management API, and the plan that rebuilds a project."""
