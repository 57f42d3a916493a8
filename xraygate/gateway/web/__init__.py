"""Server-rendered pages for people: login, worklist, study, admin (templates, static assets)."""
