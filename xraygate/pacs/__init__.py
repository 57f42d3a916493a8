"""The PACS channel: AI results back into the radiologist's viewer (IHE AI Results).

- :mod:`.context` reads what an SR says from the index (result, patient, study, the images read);
- :mod:`.sr` builds the DICOM Comprehensive SR (TID 1500 Measurement Report) with ``highdicom``;
- :mod:`.key_image` builds the optional Secondary Capture "AI key image" (banner burned in);
- :mod:`.senders` stores the objects in the PACS: C-STORE SCU (optionally over TLS) or STOW-RS;
- :mod:`.worker` is the ``emit-pacs`` / ``send-pacs`` pair, through the ordered outbox.
"""
