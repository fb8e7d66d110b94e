#!/usr/bin/env python3
"""Writes theatre.mbtiles: a tiny MBTiles 1.3 raster basemap for the console's
browser test (zooms 0-2, every tile the same 256x256 PNG: a light grid), made
with the standard library only. Run it from this folder to regenerate."""
import sqlite3, struct, zlib, os

def png(width, height, pixel):
    raw = b''.join(b'\x00' + b''.join(pixel(x, y) for x in range(width)) for y in range(height))
    def chunk(kind, data):
        return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data) & 0xffffffff)
    return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0))
            + chunk(b'IDAT', zlib.compress(raw, 9)) + chunk(b'IEND', b''))

tile = png(256, 256, lambda x, y: b'\x90\xa0\x90' if x % 32 == 0 or y % 32 == 0 else b'\xd8\xe8\xd0')
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'theatre.mbtiles')
if os.path.exists(path):
    os.remove(path)
db = sqlite3.connect(path)
db.execute('CREATE TABLE metadata (name TEXT, value TEXT)')
db.execute('CREATE TABLE tiles (zoom_level INTEGER, tile_column INTEGER, tile_row INTEGER, tile_data BLOB)')
db.execute('CREATE UNIQUE INDEX tile_index ON tiles (zoom_level, tile_column, tile_row)')
for k, v in [('name', 'test theatre'), ('format', 'png'), ('minzoom', '0'), ('maxzoom', '2'),
             ('attribution', 'Test theatre grid'), ('type', 'baselayer'), ('version', '1')]:
    db.execute('INSERT INTO metadata VALUES (?, ?)', (k, v))
for z in range(3):
    for x in range(2 ** z):
        for y in range(2 ** z):
            db.execute('INSERT INTO tiles VALUES (?, ?, ?, ?)', (z, x, y, tile))
db.commit()
db.execute('VACUUM')
db.close()
