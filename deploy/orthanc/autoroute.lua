-- Forward every instance Orthanc stores to xraygate's DICOM SCP (modality "xraygate").
function OnStoredInstance(instanceId, tags, metadata, origin)
  if origin["RequestOrigin"] ~= "Lua" then
    SendToModality(instanceId, "xraygate")
  end
end
