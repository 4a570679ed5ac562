"""``/flake`` commands in pull/merge request comments (the chat-ops issue fills these routers)."""

from __future__ import annotations

from gidgethub import routing

from bot.hooks import GitLabRouter

github = routing.Router()
gitlab = GitLabRouter()
