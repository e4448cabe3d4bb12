# Outputs: siren/relay and the DFPlayer Mini MP3 module for spoken calls.
