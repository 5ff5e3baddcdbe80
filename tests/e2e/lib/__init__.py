"""The ocimirror end-to-end harness (see notes/world-api.md): lib.world.World
builds a CA, a token service, three upstream registries with fixtures, and
starts ocimirror instances against them."""
