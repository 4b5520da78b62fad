from histocolor.cli import main

raise SystemExit(main())
