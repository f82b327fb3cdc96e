# Entry points; the work is in scripts/.
.PHONY: all build test demo deb rpm packages clean-dist

all: build

build:
	scripts/build-release.sh

# fmt, clippy, unit and namespace tests, then every tests/suites/*.sh (root, Debian 12).
test:
	scripts/test.sh

demo:
	scripts/demo.sh

# Packages into dist/ (DIST_DIR=... to change); see packaging/README.md.
deb:
	scripts/package.sh deb

rpm:
	scripts/package.sh rpm

packages:
	scripts/package.sh all

clean-dist:
	rm -rf dist target/virt-l3-pkg
