// Builds the console's third-party assets into one folder (argv[2], by
// default vendor/, which is committed): Leaflet from npm and the offline
// basemap — Natural Earth 1:50m land and country borders (world-atlas),
// turned from TopoJSON into GeoJSON here so that the browser needs nothing
// else. The binary embeds src/ and vendor/ as they are, so building Detente
// needs neither Node.js nor the npm registry; run this after changing
// package.json, and CI checks (.ci/console-vendor) that vendor/ is exactly
// what it builds. No request ever leaves the node.
import { mkdirSync, readFileSync, writeFileSync, copyFileSync, readdirSync, rmSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as topojson from 'topojson-client';

const here = dirname(fileURLToPath(import.meta.url));
const out = process.argv[2] || join(here, 'vendor');
rmSync(out, { recursive: true, force: true });
mkdirSync(join(out, 'images'), { recursive: true });

const leaflet = join(here, 'node_modules', 'leaflet', 'dist');
copyFileSync(join(leaflet, 'leaflet.js'), join(out, 'leaflet.js'));
copyFileSync(join(leaflet, 'leaflet.css'), join(out, 'leaflet.css'));
copyFileSync(join(here, 'node_modules', 'leaflet', 'LICENSE'), join(out, 'leaflet.LICENSE.txt'));
for (const f of readdirSync(join(leaflet, 'images'))) {
  copyFileSync(join(leaflet, 'images', f), join(out, 'images', f));
}

// ~100 m of precision is plenty for a basemap at the zooms it is drawn.
const round = (c) => (typeof c[0] === 'number'
  ? [Math.round(c[0] * 1000) / 1000, Math.round(c[1] * 1000) / 1000]
  : c.map(round));
const geometry = (g) => ({ type: g.type, coordinates: round(g.coordinates) });
const atlas = join(here, 'node_modules', 'world-atlas');
const land = JSON.parse(readFileSync(join(atlas, 'land-50m.json'), 'utf8'));
const countries = JSON.parse(readFileSync(join(atlas, 'countries-50m.json'), 'utf8'));
const landGeo = topojson.feature(land, land.objects.land);
const borders = topojson.mesh(countries, countries.objects.countries, (a, b) => a !== b);
const basemap = {
  source: 'Natural Earth 1:50m (public domain), via world-atlas 2.0.2',
  land: { type: 'FeatureCollection', features: landGeo.features.map((f) => ({ type: 'Feature', properties: {}, geometry: geometry(f.geometry) })) },
  borders: { type: 'Feature', properties: {}, geometry: geometry(borders) },
};
writeFileSync(join(out, 'basemap.json'), JSON.stringify(basemap));
console.log(`the console's vendored assets built into ${out}`);
